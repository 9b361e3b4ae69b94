-- A live batch of the findings projection writes its rows and moves its checkpoint
-- in one statement, without a transaction of its own (BEGIN and COMMIT were two of
-- a triage batch's five round trips). The checkpoint only moves if it still stands
-- where the batch started; when it does not (a rebuild swapped its tables in), the
-- statement calls this, and the error takes every write of the statement with it.
CREATE FUNCTION projection_checkpoint_moved(projection text) RETURNS bigint
LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the checkpoint of projection % moved under the batch', projection
        USING ERRCODE = 'VL409';
END
$$;
