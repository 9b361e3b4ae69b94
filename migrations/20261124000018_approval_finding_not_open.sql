-- Raised by an approval whose finding can no longer take the risk acceptance it
-- decides: resolved or marked a false positive while the request waited.
CREATE FUNCTION approval_finding_not_open(finding uuid, status text) RETURNS integer
LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the finding % is % now, so the risk acceptance can no longer apply; reject or withdraw the request instead', finding, status
        USING ERRCODE = 'VL409';
END
$$;
