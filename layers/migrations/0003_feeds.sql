-- Feeds (OGC API - Features): indexes for keyset paging and for the temporal extent.

-- Incidents are paged by (reported_at, id): both immutable, and reported_at follows the order
-- rows are written in, so a page reads neighbouring heap pages instead of one page per row (as
-- paging by the random uuid alone would). updated_at rides along for the page fingerprint
-- behind ETag, which is then read from the index alone.
CREATE INDEX IF NOT EXISTS incidents_feed_page_idx ON incidents (reported_at, id) INCLUDE (updated_at);
-- `datetime` filters and the temporal extent (min/max) use occurred_at.
CREATE INDEX IF NOT EXISTS incidents_occurred_idx ON incidents (occurred_at);
