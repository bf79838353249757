import { Effect, FiberRef } from "effect"
import { randomUUID } from "node:crypto"

/** The current request's id: set by the HTTP edge, read wherever a log line or an error body needs it. */
export const CurrentRequestId: FiberRef.FiberRef<string> = FiberRef.unsafeMake("")

export const currentRequestId: Effect.Effect<string> = FiberRef.get(CurrentRequestId)

const WELL_FORMED = /^[A-Za-z0-9._-]{1,128}$/

/** A client's `X-Request-Id` is kept when well-formed (so traces join up), else Nexxi makes its own. */
export const requestIdFrom = (header: string | undefined): string =>
  header !== undefined && WELL_FORMED.test(header) ? header : randomUUID()
