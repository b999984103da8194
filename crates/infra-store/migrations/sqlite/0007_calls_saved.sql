-- Backend calls an early stop spared (a council that agreed on a proposal passing every
-- acceptance test ends its review rounds early), stored with the completed outcome so
-- GetDeliberationResult reports what the synchronous answer did. Existing rows: 0.
ALTER TABLE deliberations ADD COLUMN calls_saved INTEGER NOT NULL DEFAULT 0;
