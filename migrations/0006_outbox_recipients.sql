-- Delivery per recipient: one refused address must not hold back the others, and a
-- retry must not send twice to someone who already has the email. Both are JSON lists:
-- the addresses the server accepted, and those it refused for good ({address, reason}).
ALTER TABLE outbox ADD COLUMN delivered_to TEXT NOT NULL DEFAULT '[]';
ALTER TABLE outbox ADD COLUMN refused TEXT NOT NULL DEFAULT '[]';
