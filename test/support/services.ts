/**
 * The backing services of integration tests (Redis, PostgreSQL), found through their URL variables (`REDIS_URL`,
 * `DATABASE_URL`). Without the variable the tests that need it are skipped, with a line saying so; under `CI=true`
 * a missing variable fails the run instead, so that CI cannot turn green by skipping them.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect } from "effect"

/** The service's URL, or undefined when its tests must not run (skipped, or failed under CI). */
export const serviceUrl = (variable: string, tests: string): string | undefined => {
  const url = process.env[variable]
  if (url !== undefined && url.trim() !== "") return url
  if (process.env.CI === "true") {
    describe(tests, () => {
      it(`need ${variable}`, () => {
        expect.fail(`${variable} is not set: under CI=true ${tests} must run against a real server, not be skipped`)
      })
    })
  } else {
    console.warn(`SKIPPED ${tests}: ${variable} is not set`)
  }
  return undefined
}

/**
 * Polls until a condition holds, for what happens in real time in a real server (expiry, reconnection): never a
 * fixed sleep. Fails the test when it does not hold within `timeout`.
 */
export const eventually = <A, E, R>(
  check: Effect.Effect<A, E, R>,
  holds: (value: A) => boolean,
  timeout: Duration.DurationInput = "10 seconds"
): Effect.Effect<A, never, R> => {
  const poll: Effect.Effect<A, E, R> = Effect.flatMap(check, (value) =>
    holds(value)
      ? Effect.succeed(value)
      : Effect.zipRight(
          Effect.sleep("10 millis"),
          Effect.suspend(() => poll)
        )
  )
  return poll.pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`condition not met within ${String(timeout)}`)
    }),
    Effect.orDie
  )
}
