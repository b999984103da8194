-- Who created each deliberation: the authenticated principal (a token's name or a client
-- certificate's subject). Rows from before authentication belong to `anonymous`, the principal
-- of a server without authentication, so they stay visible there and to admins.
ALTER TABLE deliberations ADD COLUMN principal TEXT NOT NULL DEFAULT 'anonymous';
CREATE INDEX deliberations_by_principal_created ON deliberations (principal, created_at_ms DESC, task_id DESC);
