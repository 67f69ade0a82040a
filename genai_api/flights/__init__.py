"""In-process coalescing: one flight per key (`coalesce`, `coalesce_many`), lookups shared
while under way (`shared_reads`), and live streams fanned out to every waiter (`fanout`,
`relay`). Fleet-wide coalescing across processes is `genai_api.leases`."""
