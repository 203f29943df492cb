-- The lifecycle (config lifecycle): activity, expiry, the queue's order,
-- keep and extend marks, what each environment used while it ran; and
-- why an environment is down (put down on request, or expired at a SHA).
ALTER TABLE environments ADD COLUMN activity_at INTEGER;
ALTER TABLE environments ADD COLUMN expires_at INTEGER;
ALTER TABLE environments ADD COLUMN queued_at INTEGER;
ALTER TABLE environments ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN extend_until INTEGER;
ALTER TABLE environments ADD COLUMN warned_for INTEGER;
ALTER TABLE environments ADD COLUMN run_s REAL NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN cpu_s REAL NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN gb_s REAL NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN peak_mem INTEGER NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN usage_since INTEGER;
ALTER TABLE down_environments ADD COLUMN reason TEXT NOT NULL DEFAULT 'down';
ALTER TABLE down_environments ADD COLUMN sha TEXT NOT NULL DEFAULT '';
