-- Where each photo was taken (its own GPS), indexed like every other geometry: a map of the
-- evidence near a place, or photos taken far from their report, are questions by place.
CREATE INDEX IF NOT EXISTS media_gps_idx ON media USING gist (gps);
