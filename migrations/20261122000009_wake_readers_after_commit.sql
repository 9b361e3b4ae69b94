-- Readers are woken after the commit by the appending process (src/store/wake.rs),
-- not by a NOTIFY inside the appending transaction: PostgreSQL serialises the
-- commits of notifying transactions through their WAL flush, which halved the rate
-- of concurrent single-event appends. Readers still poll, so an appender that is
-- not vulnledger (or that dies after its commit) costs latency, never events.
DROP TRIGGER events_appended ON events;
DROP FUNCTION notify_events_appended();
