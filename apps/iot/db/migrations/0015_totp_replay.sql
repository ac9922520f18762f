-- A TOTP code opens one sign-in only (RFC 6238 section 5.2): the time step of the last accepted code is kept
-- per user, and a code of that step or an earlier one is refused, also within its +-1 step validity window.
-- NULL: no code accepted since the seed was set.
ALTER TABLE users ADD COLUMN totp_last_step bigint;
