-- Every change that ends (or may end) a live session is announced on the channel
-- `pgbridge_sessions`, its payload the session's id (`*` after a TRUNCATE: forget them all),
-- sent when the transaction commits. Each service process LISTENs on it and forgets the
-- session in its in-process cache (src/auth/cache.rs), so a logout, a revocation by the
-- per-account cap, an account deleted (the cascade deletes its sessions), pruning, or a
-- row changed by hand stops the token on every replica at once, not after a cache lifetime.
--
-- Rows already revoked need no notice: no process keeps a revoked session. An expired row
-- is announced anyway when deleted (a cache never keeps one past its expiry, but its notice
-- costs little and needs no clock to agree).

CREATE FUNCTION pgbridge_sessions_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('pgbridge_sessions', '*');
    ELSIF OLD.revoked_at IS NULL AND (
        TG_OP = 'DELETE'
        OR (NEW.revoked_at, NEW.expires_at, NEW.token_hash, NEW.account_id)
           IS DISTINCT FROM (OLD.revoked_at, OLD.expires_at, OLD.token_hash, OLD.account_id)
    ) THEN
        PERFORM pg_notify('pgbridge_sessions', OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_notify_revocations
    AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION pgbridge_sessions_notify();

CREATE TRIGGER sessions_notify_truncate
    AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION pgbridge_sessions_notify();
