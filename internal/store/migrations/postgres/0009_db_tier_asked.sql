-- The database tier a pull request asked for by command (/preview db
-- <tier>); a preview:db=<tier> label wins over it. Empty: none asked, the
-- label's or the configured default applies. Kept when the environment
-- is removed and revived: it is the pull request's choice, as a label is.
ALTER TABLE environments ADD COLUMN db_tier_asked TEXT NOT NULL DEFAULT '';
