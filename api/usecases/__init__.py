"""The use-cases: report, transition, re-route, load, demo, deliver, photos, the audit trail.

Each is one transaction, called alike by every face (HTTP routes, pages, the CLI). This
package never imports the faces (the rest of ``api/``); import-linter keeps it so.
"""
