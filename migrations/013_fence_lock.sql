-- The fence, serialised with the erasure's start. An append carrying a
-- subject's personal data takes that subject's advisory lock, shared,
-- before it checks the erasure ledger, and holds it until it commits; an
-- erasure (and a legal hold) takes the same lock exclusively to record
-- itself (forgettable/postgres). So an append that passed the check
-- commits before the erasure starts, and is counted in its
-- eventsAffected; an append that comes later waits, then sees the erasure
-- and is refused. Before, the check was a plain read: an append whose
-- trigger ran just before the erasure committed could commit after it,
-- uncounted. Shared locks never wait for each other, so appends do not
-- serialise. The lock key is the one forgettable/postgres uses:
-- hashtextextended('lethe.subject:' || subject_ref, 0).
--
-- Application role (docs/operations.md): unchanged (advisory locks need no
-- grant).
CREATE OR REPLACE FUNCTION lethe_refuse_erased_subjects() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erased text;
    ref text;
BEGIN
    FOREACH ref IN ARRAY NEW.subject_refs LOOP
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('lethe.subject:' || ref, 0));
    END LOOP;
    SELECT subject_ref INTO erased FROM erasures WHERE subject_ref = ANY (NEW.subject_refs) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lethe: event carries personal data of an erased data subject'
            USING ERRCODE = 'LT002', DETAIL = erased,
                  HINT = 'An erased subject needs an explicit re-admission before new personal data.';
    END IF;
    RETURN NEW;
END;
$$;

---- create above / drop below ----

CREATE OR REPLACE FUNCTION lethe_refuse_erased_subjects() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erased text;
BEGIN
    SELECT subject_ref INTO erased FROM erasures WHERE subject_ref = ANY (NEW.subject_refs) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lethe: event carries personal data of an erased data subject'
            USING ERRCODE = 'LT002', DETAIL = erased,
                  HINT = 'An erased subject needs an explicit re-admission before new personal data.';
    END IF;
    RETURN NEW;
END;
$$;
