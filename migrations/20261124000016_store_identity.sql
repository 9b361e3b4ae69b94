-- Which event store this is, for everything that shares a NATS server with other
-- stores: the relay stamps each message with it, and each worker's durable consumer
-- is named after it and skips messages of other stores. One row, written by the
-- first process to start (`store::identity`). It also records the database it was
-- made in, so that a copy of the database (`CREATE DATABASE ... TEMPLATE`, a restore
-- under another name) takes an identity of its own instead of the original's.
CREATE TABLE store_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    id uuid NOT NULL,
    database_oid oid NOT NULL
);
