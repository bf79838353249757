/**
 * Rate-limit counters in this process's memory: the embedded default without Redis. The same algorithm as the Redis
 * script (`Redis.ts`), so that limits mean the same with one replica; with several, each would count alone, which is
 * why a deployment with replicas sets REDIS_URL.
 */
import { Effect, Option } from "effect"
import { type Admission, Check, type CheckState, type LimiterStore } from "../RateLimit.js"

interface Window {
  readonly start: number
  readonly used: number
  readonly windowMillis: number
}

/** Expired windows and leases are dropped every so many admissions, so that memory follows the active keys. */
const SWEEP_EVERY = 1_000

export const makeMemoryLimiterStore = (): LimiterStore => {
  const windows = new Map<string, Window>()
  /** Per key, each lease's expiry. */
  const leases = new Map<string, Map<string, number>>()
  let admissions = 0

  const sweep = (now: number) => {
    for (const [key, window] of windows) if (now >= window.start + window.windowMillis) windows.delete(key)
    for (const [key, held] of leases) {
      for (const [leaseId, expiresAt] of held) if (expiresAt <= now) held.delete(leaseId)
      if (held.size === 0) leases.delete(key)
    }
  }

  const currentWindow = (key: string, windowMillis: number, now: number): Window => {
    const window = windows.get(key)
    return window === undefined || now >= window.start + window.windowMillis
      ? { start: now, used: 0, windowMillis }
      : window
  }

  const liveLeases = (key: string, now: number) => {
    const held = leases.get(key) ?? new Map<string, number>()
    for (const [leaseId, expiresAt] of held) if (expiresAt <= now) held.delete(leaseId)
    return held
  }

  const admit = (checks: ReadonlyArray<Check>, now: number): Admission => {
    if (++admissions % SWEEP_EVERY === 0) sweep(now)
    let refused = Option.none<number>()
    const fits = (index: number, passes: boolean) => {
      if (!passes && Option.isNone(refused)) refused = Option.some(index)
    }
    const looked = checks.map((check, index) =>
      Check.$match(check, {
        Window: (window) => {
          const current = currentWindow(window.key, window.windowMillis, now)
          fits(index, current.used + Math.max(window.cost, 1) <= window.limit)
          return () => {
            const after = Option.isNone(refused) ? { ...current, used: current.used + window.cost } : current
            if (Option.isNone(refused) && window.cost > 0) windows.set(window.key, after)
            const state: CheckState = {
              used: after.used,
              windowStart: after.start,
              resetMillis: after.start + after.windowMillis - now
            }
            return state
          }
        },
        Lease: (lease) => {
          const held = liveLeases(lease.key, now)
          fits(index, held.size < lease.limit)
          return () => {
            if (Option.isNone(refused)) leases.set(lease.key, held.set(lease.leaseId, now + lease.ttlMillis))
            const state: CheckState = { used: held.size, windowStart: 0, resetMillis: 0 }
            return state
          }
        }
      })
    )
    // Every check looked before any is applied: all or nothing.
    return { refused, states: looked.map((apply) => apply()) }
  }

  return {
    admit: (checks, now) => Effect.sync(() => admit(checks, now)),
    adjust: (key, windowStart, delta) =>
      Effect.sync(() => {
        const window = windows.get(key)
        if (window !== undefined && window.start === windowStart) {
          windows.set(key, { ...window, used: Math.max(0, window.used + delta) })
        }
      }),
    renew: (key, leaseId, expiresAt) =>
      Effect.sync(() => {
        const held = leases.get(key)
        if (held === undefined || !held.has(leaseId)) return false
        held.set(leaseId, expiresAt)
        return true
      }),
    release: (key, leaseId) =>
      Effect.sync(() => {
        const held = leases.get(key)
        held?.delete(leaseId)
        if (held?.size === 0) leases.delete(key)
      })
  }
}
