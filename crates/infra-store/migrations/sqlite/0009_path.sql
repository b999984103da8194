-- Which way a deliberation went: "council", or a cascade's "cascade_first_answer" (one call) or
-- "cascade_escalated" (the rest of the council joined). Set with the outcome; existing rows ran
-- as a council.
ALTER TABLE deliberations ADD COLUMN path TEXT NOT NULL DEFAULT 'council';
