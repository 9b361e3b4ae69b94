-- A finding's search text and tags never change after it is detected, but every
-- status change rewrote its finding_view row, and with it an entry in every index,
-- the trigram index's too: PostgreSQL cannot make an update HOT when an indexed
-- column (status, due_at, last_seen) changes. That GIN insertion was most of a live
-- projection batch's time. The text and its indexes now live beside the row,
-- written once per finding.
CREATE TABLE finding_text
(
    id        uuid PRIMARY KEY,
    tenant_id uuid   NOT NULL,
    -- Lower-cased title, CVE, asset and package: what `q` searches.
    search    text   NOT NULL,
    tags      text[] NOT NULL
);

INSERT INTO finding_text (id, tenant_id, search, tags)
SELECT id, tenant_id, search, tags
FROM finding_view;

CREATE INDEX finding_text_search_idx ON finding_text USING gin (search gin_trgm_ops);
CREATE INDEX finding_text_tags_idx ON finding_text USING gin (tags);

DROP INDEX finding_view_search_idx;
DROP INDEX finding_view_tags_idx;
ALTER TABLE finding_view DROP COLUMN search;
