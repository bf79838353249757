/**
 * A finalizer for the current scope, at the cost of a function in a list. `Effect.addFinalizer` also runs its
 * finalizer with the fiber references of the moment it was added (context, span, log annotations), which costs a
 * diff and a patch of every fiber reference, twice: about 25 µs, several times per chat turn. Finalizers on the turn's
 * path close over what they need, and run on the fiber that closes the scope.
 */
import { Effect, type Exit, Scope } from "effect"

export const onScopeClose = (
  finalizer: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) => Scope.addFinalizerExit(scope, finalizer))

/** `Effect.acquireRelease` for an acquisition that cannot fail nor be interrupted half-way (a synchronous one). */
export const acquireSync = <A>(
  acquire: () => A,
  release: (resource: A, exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
): Effect.Effect<A, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) =>
    Effect.uninterruptible(
      Effect.suspend(() => {
        const resource = acquire()
        return Effect.as(
          Scope.addFinalizerExit(scope, (exit) => release(resource, exit)),
          resource
        )
      })
    )
  )
