-- The source last rolled out, to restart an environment before the forge
-- answers.
ALTER TABLE environments ADD COLUMN source TEXT NOT NULL DEFAULT '';
