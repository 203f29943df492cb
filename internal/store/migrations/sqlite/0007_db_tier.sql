-- The database tier (schema, clone, empty) an environment's database was
-- made with, so a change of tier (label preview:db=...) re-provisions it.
-- Empty: made before tiers, or by a provider with one tier.
ALTER TABLE environments ADD COLUMN db_tier TEXT NOT NULL DEFAULT '';
