"""Trim streams by what their consumer group has finished, so Redis frees memory as soon as it can.

A stream entry is deleted (XTRIM MINID) once
- its consumer group has acknowledged it (delivered and not pending) and it is older than `keep_s`
  (kept that long for inspection), or
- it is older than `max_age_s` whatever its state: a check batch that old is past its devices' next checks.
So the memory of deleted devices (and of huge entries) is given back within `keep_s`, not after
MAXLEN messages, which at one batch per second and region was hours.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

# KEYS[1] stream. ARGV[1] group, ARGV[2] keep-until id (now - keep_s), ARGV[3] max-age id (now - max_age_s).
# Deletes entries below max(ARGV[3], min(ARGV[2], first entry the group still needs)); returns how many.
TRIM_FINISHED = """
local function less(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local needed = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last = nil, nil
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  if name == ARGV[1] then
    local ms, seq = string.match(last, '^(%d+)-(%d+)$')
    needed = ms .. '-' .. (tonumber(seq) + 1)  -- entries after the last delivered one are not read yet
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
    if tonumber(pending[1]) > 0 and less(pending[2], needed) then needed = pending[2] end
  end
end
local minid = ARGV[2]
if needed ~= nil and less(needed, minid) then minid = needed end
if needed == nil then minid = ARGV[3] end  -- nobody reads this stream (yet): only the age bound applies
if less(minid, ARGV[3]) then minid = ARGV[3] end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
"""


def stream_id_at(unix_s: float) -> str:
    return f"{max(int(unix_s * 1000), 0)}-0"


class StreamTrimmer:
    def __init__(self, client: aioredis.Redis, *, keep_s: float, max_age_s: float) -> None:
        self._script = client.register_script(TRIM_FINISHED)
        self._keep_s = keep_s
        self._max_age_s = max_age_s

    async def trim(self, stream: str, group: str, client: aioredis.Redis | None = None,
                   now: float | None = None) -> int | None:
        """Trim one stream (or queue the call on `client`, a pipeline); returns the entries deleted."""
        now = time.time() if now is None else now
        return await self._script(
            keys=[stream], args=[group, stream_id_at(now - self._keep_s), stream_id_at(now - self._max_age_s)],
            client=client,
        )
