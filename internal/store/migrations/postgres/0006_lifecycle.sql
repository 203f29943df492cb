-- The lifecycle (config lifecycle): activity, expiry, the queue's order,
-- keep and extend marks, what each environment used while it ran; and
-- why an environment is down (put down on request, or expired at a SHA).
ALTER TABLE environments ADD COLUMN activity_at BIGINT;
ALTER TABLE environments ADD COLUMN expires_at BIGINT;
ALTER TABLE environments ADD COLUMN queued_at BIGINT;
ALTER TABLE environments ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN extend_until BIGINT;
ALTER TABLE environments ADD COLUMN warned_for BIGINT;
ALTER TABLE environments ADD COLUMN run_s DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN cpu_s DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN gb_s DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN peak_mem BIGINT NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN usage_since BIGINT;
ALTER TABLE down_environments ADD COLUMN reason TEXT NOT NULL DEFAULT 'down';
ALTER TABLE down_environments ADD COLUMN sha TEXT NOT NULL DEFAULT '';
