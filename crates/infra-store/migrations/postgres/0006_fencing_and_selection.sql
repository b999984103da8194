-- Fencing: every claim of an unfinished deliberation increments its epoch, and every write of a
-- running deliberation names the owner and epoch it holds, so a node that lost its lease can no
-- longer write. Existing rows start at epoch 0, the epoch of a row that was never claimed.
ALTER TABLE deliberations ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
-- How Orchestrate chose the winner, as JSON {"method","winner_id","rationale"}; NULL until chosen
-- (and for deliberations that were not orchestrated).
ALTER TABLE deliberations ADD COLUMN selection TEXT;
