/**
 * PostgreSQL for tests: a database of the test's own on the shared server (created empty, dropped afterwards),
 * and a TCP proxy between Nexxi and the server that a test can close and reopen to stage an outage, or use to cut
 * a connection right after the server committed (an ambiguous failure: the client cannot know the commit happened).
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { createServer, type Server, type Socket, connect } from "node:net"

/** `url` with another database name. */
export const withDatabase = (url: string, database: string) => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** A new, empty database named `nexxi_test_<random>` on the server of `adminUrl`; dropped when the scope closes. */
export const isolatedDatabase = (adminUrl: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.gen(function* () {
    const name = `nexxi_test_${randomBytes(6).toString("hex")}`
    const admin = yield* Layer.build(PgClient.layer({ url: Redacted.make(adminUrl), maxConnections: 1 })).pipe(
      Effect.map(Context.get(PgClient.PgClient)),
      Effect.orDie
    )
    yield* Effect.acquireRelease(Effect.orDie(admin`CREATE DATABASE ${admin(name)}`), () =>
      Effect.orDie(admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`)
    )
    return withDatabase(adminUrl, name)
  })

export interface TcpProxy {
  readonly port: number
  /** Refuses new connections and resets open ones: the database is unreachable. */
  readonly close: Effect.Effect<void>
  /** Accepts connections again, on the same port. */
  readonly open: Effect.Effect<void>
  /**
   * The next time a client sends a message containing `text` (a COMMIT, a statement that commits on its own), lets
   * it reach the server, waits for the server's answer, and drops the connection instead of passing the answer on:
   * the write is committed, the client sees a lost connection.
   */
  readonly cutNextAnswerTo: (text: string) => Effect.Effect<void>
  /** How many answers were cut so far. */
  readonly cuts: () => number
}

/** A loopback proxy to `target` (host:port) for the current scope. */
export const tcpProxy = (targetHost: string, targetPort: number): Effect.Effect<TcpProxy, never, Scope.Scope> =>
  Effect.gen(function* () {
    const sockets = new Set<Socket>()
    let armed: string | undefined
    let cuts = 0

    const handle = (client: Socket) => {
      const upstream = connect(targetPort, targetHost)
      sockets.add(client).add(upstream)
      let cutting = false
      const drop = () => {
        client.destroy()
        upstream.destroy()
      }
      client.on("data", (chunk) => {
        if (armed !== undefined && chunk.includes(armed)) {
          armed = undefined
          cutting = true
        }
        upstream.write(chunk)
      })
      upstream.on("data", (chunk) => {
        if (cutting) {
          cuts++
          return drop()
        }
        client.write(chunk)
      })
      for (const socket of [client, upstream]) {
        socket.on("error", drop)
        socket.on("close", () => (sockets.delete(socket), drop()))
      }
    }

    let server: Server | undefined
    const listen = (port: number) =>
      Effect.async<number>((resume) => {
        const listening = createServer(handle)
        listening.listen(port, "127.0.0.1", () => {
          server = listening
          resume(Effect.succeed((listening.address() as { port: number }).port))
        })
      })
    const close = Effect.async<void>((resume) => {
      const closing = server
      server = undefined
      for (const socket of sockets) socket.destroy()
      sockets.clear()
      if (closing === undefined) return resume(Effect.void)
      closing.close(() => resume(Effect.void))
    })

    const port = yield* listen(0)
    yield* Effect.addFinalizer(() => close)
    return {
      port,
      close,
      open: Effect.asVoid(listen(port)),
      cutNextAnswerTo: (text) => Effect.sync(() => void (armed = text)),
      cuts: () => cuts
    }
  })

/** A database of the test's own behind a proxy the test controls, and a client that bypasses the proxy. */
export const isolatedDatabaseBehindProxy = (
  adminUrl: string
): Effect.Effect<
  { readonly url: string; readonly proxy: TcpProxy; readonly sql: PgClient.PgClient },
  never,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const url = yield* isolatedDatabase(adminUrl)
    const target = new URL(url)
    const proxy = yield* tcpProxy(target.hostname, Number(target.port || 5432))
    const viaProxy = new URL(url)
    viaProxy.host = `127.0.0.1:${proxy.port}`
    const sql = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })).pipe(
      Effect.map(Context.get(PgClient.PgClient)),
      Effect.orDie
    )
    return { url: viaProxy.toString(), proxy, sql }
  })
