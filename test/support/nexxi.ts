/**
 * Nexxi as a real child process for the scope of a test (`spawnNexxi`), and what a test can observe of it from
 * outside: HTTP calls with a key, its metrics, its memory and open file descriptors (from /proc), and raw sockets
 * for clients that do not speak HTTP properly.
 */
import { Effect, type Scope } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { isolatedDatabase } from "./postgres.js"
import { type NexxiProcess, spawnNexxi } from "./process.js"
import { type Family, parseExposition, valueOrZero } from "./prometheus.js"

export const RELIABILITY_KEY = "reliability-key-0123456789abcdef0123456789abcdef"

/** No rate limits unless a test sets them: the suite sends far more than a client would. */
const unlimited = {
  API_KEY: RELIABILITY_KEY,
  RATE_LIMIT_RPM: "0",
  RATE_LIMIT_TPM: "0",
  RATE_LIMIT_CONCURRENCY: "0",
  AUTH_FAILURES_PER_MINUTE: "0",
  ECHO_TOKEN_DELAY_MS: "0",
  LOG_LEVEL: "info"
}

/**
 * Where a process keeps conversations when the test does not say: a database of its own on DATABASE_URL's server,
 * else an embedded PGlite in a temporary directory (slower to create).
 */
export const storageEnv: Effect.Effect<Record<string, string>, never, Scope.Scope> = Effect.suspend(
  (): Effect.Effect<Record<string, string>, never, Scope.Scope> => {
    const adminUrl = process.env.DATABASE_URL
    if (adminUrl !== undefined && adminUrl.trim() !== "") {
      return Effect.map(isolatedDatabase(adminUrl), (url) => ({ DATABASE_URL: url }))
    }
    return Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "nexxi-reliability-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      ),
      (dir) => ({ DATA_DIR: dir })
    )
  }
)

/** Stops a process that is still running and waits for its exit. */
const kill = (nexxi: NexxiProcess) =>
  Effect.promise(async () => {
    if (nexxi.child.exitCode === null && nexxi.child.signalCode === null) nexxi.child.kill("SIGKILL")
    await nexxi.exited
  })

/**
 * Starts Nexxi (`src/main.ts`) with the environment given over unlimited rate limits and its own storage, and
 * waits until it listens; killed when the scope closes if the test has not stopped it.
 */
export const nexxiProcess = (env: Record<string, string> = {}): Effect.Effect<NexxiProcess, never, Scope.Scope> =>
  Effect.gen(function* () {
    const storage = "DATABASE_URL" in env || "DATA_DIR" in env ? {} : yield* storageEnv
    return yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const nexxi = await spawnNexxi({ ...unlimited, ...storage, ...env })
        // Ready when /health answers (whatever LOG_LEVEL says), or failed when it exits first.
        const deadline = performance.now() + 60_000
        for (;;) {
          // With a timeout: a request that arrives between listen() and the handler being attached is never answered.
          const up = await fetch(nexxi.url + "/health", { signal: AbortSignal.timeout(1_000) }).then(
            (response) => response.status === 200,
            () => false
          )
          if (up) return nexxi
          if (nexxi.child.exitCode !== null || performance.now() > deadline) {
            nexxi.child.kill("SIGKILL")
            throw new Error(`Nexxi did not start (exit ${nexxi.child.exitCode}):\n${nexxi.stdout()}\n${nexxi.stderr()}`)
          }
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      }),
      kill
    )
  })

export type CallInit = RequestInit & { readonly json?: unknown; readonly key?: string | undefined }

/** `fetch` against the process with the API key (another with `key`), JSON-encoding `json` as the body. */
export const call = (nexxi: { readonly url: string }, path: string, init: CallInit = {}) => {
  const { json, key = RELIABILITY_KEY, headers, ...rest } = init
  return fetch(nexxi.url + path, {
    ...rest,
    headers: {
      "x-api-key": key,
      ...(json === undefined ? {} : { "content-type": "application/json" }),
      ...(headers as Record<string, string> | undefined)
    },
    ...(json === undefined ? {} : { body: JSON.stringify(json) })
  })
}

/** The same as an Effect, for `it.scopedLive` tests. */
export const callEffect = (nexxi: { readonly url: string }, path: string, init: CallInit = {}) =>
  Effect.promise(() => call(nexxi, path, init))

export const post = (nexxi: { readonly url: string }, path: string, json: unknown, key?: string) =>
  callEffect(nexxi, path, { method: "POST", json, key })

export const jsonOf = (response: Response) => Effect.promise(() => response.json() as Promise<any>)

/** The process's metrics, parsed (and checked) as Prometheus would. */
export const scrape = (nexxi: { readonly url: string }): Effect.Effect<Map<string, Family>> =>
  Effect.promise(async () => parseExposition(await (await fetch(nexxi.url + "/metrics")).text()))

export const metricValue = (nexxi: { readonly url: string }, name: string, labels: Record<string, string> = {}) =>
  Effect.map(scrape(nexxi), (families) => valueOrZero(families, name, labels))

/** /health answers 200 (within a second): the process serves. */
export const healthy = (nexxi: { readonly url: string }) =>
  Effect.promise(() =>
    fetch(nexxi.url + "/health", { signal: AbortSignal.timeout(1_000) }).then(
      (response) => response.status === 200,
      () => false
    )
  )

/** Resident set size of a process, in bytes (Linux). */
export const residentBytes = (pid: number) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((entry) => entry.startsWith("VmRSS:"))
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? NaN) * 1024
}

/** Open file descriptors of a process, and how many of them are sockets (Linux). */
export const openDescriptors = (pid: number) => {
  const fds = readdirSync(`/proc/${pid}/fd`)
  let sockets = 0
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) sockets++
    } catch {
      // Closed between the listing and the look.
    }
  }
  return { total: fds.length, sockets }
}

export interface RawReply {
  /** Everything the server sent before closing (or before the timeout). */
  readonly text: string
  readonly status: number | undefined
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** The server closed the connection (rather than the timeout ending the wait). */
  readonly closed: boolean
}

export const parseRawReply = (text: string, closed: boolean): RawReply => {
  const end = text.indexOf("\r\n\r\n")
  const head = end === -1 ? text : text.slice(0, end)
  const [statusLine = "", ...lines] = head.split("\r\n")
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]
  return {
    text,
    status: status === undefined ? undefined : Number(status),
    headers,
    body: end === -1 ? "" : text.slice(end + 4),
    closed
  }
}

/** A raw TCP connection to the process, for clients that do not speak HTTP properly. */
export const rawSocket = (url: string): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url)
    const socket = connect(Number(port), hostname, () => resolve(socket))
    socket.once("error", reject)
  })

/** Collects what a socket receives until the server closes it, or `timeoutMs` passes. */
export const readUntilClosed = (socket: Socket, timeoutMs = 10_000): Promise<RawReply> =>
  new Promise((resolve) => {
    let text = ""
    const done = (closed: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(parseRawReply(text, closed))
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.on("data", (chunk) => (text += chunk.toString("latin1")))
    socket.on("error", () => {})
    socket.once("close", () => done(true))
  })

/** Sends `bytes` on a new connection and returns what comes back until the server closes it. */
export const rawExchange = async (url: string, bytes: string | Buffer, timeoutMs = 10_000) => {
  const socket = await rawSocket(url)
  const reply = readUntilClosed(socket, timeoutMs)
  socket.write(bytes)
  return reply
}

export { valueOrZero }

/**
 * Creates a managed API key with the keys CLI (`npm run keys -- create`), on the storage of `env`, as an operator
 * would; returns the key, shown once.
 */
export const createManagedKey = (env: Record<string, string>, name: string): Effect.Effect<string> =>
  Effect.promise(
    () =>
      new Promise<string>((resolve, reject) => {
        const root = fileURLToPath(new URL("../..", import.meta.url))
        const child = spawn(
          process.execPath,
          [
            "--import",
            pathToFileURL(`${root}node_modules/tsx/dist/loader.mjs`).href,
            `${root}src/cli/keys.ts`,
            "create",
            "--name",
            name
          ],
          { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME, API_KEY: RELIABILITY_KEY, ...env } }
        )
        let output = ""
        child.stdout.on("data", (chunk) => (output += chunk))
        child.stderr.on("data", (chunk) => (output += chunk))
        child.on("exit", (code) => {
          const key = /key: (nx_[A-Za-z0-9_-]+)/.exec(output)?.[1]
          if (code === 0 && key !== undefined) resolve(key)
          else reject(new Error(`keys create exited ${code}:\n${output}`))
        })
      })
  )
