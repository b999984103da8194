-- Which server runs an unfinished deliberation, and until when its claim holds unless renewed.
ALTER TABLE deliberations ADD COLUMN owner TEXT;
ALTER TABLE deliberations ADD COLUMN lease_until_ms INTEGER;
