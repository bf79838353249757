/**
 * The web chat page as served: the page and its assets come from Nexxi itself, with a strict content security
 * policy, and without inline script or style; the page's routes are in the route table (other paths still get the
 * JSON 404/405) but not in the OpenAPI document.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startTestServer } from "./support/server.js"

const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)
const get = (url: string, headers: Record<string, string> = {}) => call(() => fetch(url, { headers }))
const text = (response: Response) => call(() => response.text())

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const expectSecurityHeaders = (response: Response) => {
  expect(response.headers.get("content-security-policy")).toBe(CSP)
  expect(response.headers.get("x-content-type-options")).toBe("nosniff")
  expect(response.headers.get("referrer-policy")).toBe("no-referrer")
  expect(response.headers.get("cache-control")).toBe("no-cache")
}

/** Every same-origin URL a document refers to through src or href. */
const referencesOf = (html: string) => [...html.matchAll(/\s(?:src|href)="([^"]+)"/g)].map((match) => match[1]!)

describe("the web chat page", () => {
  it.scopedLive("is served at / without a key, with a strict CSP, and no inline script or style", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const response = yield* get(server.url + "/")
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8")
      expectSecurityHeaders(response)
      const html = yield* text(response)
      expect(html).toContain('<script type="module" src="/assets/app.js"></script>')
      // The CSP would block them anyway; the page must not need them.
      expect(html).not.toMatch(/<script(?![^>]*\ssrc=)/)
      expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i)

      // Everything the page loads comes from Nexxi; nothing from a CDN.
      const references = referencesOf(html).filter((url) => !url.startsWith("#"))
      expect(references.length).toBeGreaterThan(0)
      for (const url of references) expect(url, url).toMatch(/^\/assets\//)
    })
  )

  it.scopedLive("serves its modules and the browser builds of marked and DOMPurify, with the same headers", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const modules = ["app.js", "api.js", "errors.js", "markdown.js", "vendor/marked.esm.js", "vendor/purify.es.mjs"]
      for (const name of modules) {
        const response = yield* get(`${server.url}/assets/${name}`)
        expect(response.status, name).toBe(200)
        expect(response.headers.get("content-type"), name).toBe("text/javascript; charset=utf-8")
        expectSecurityHeaders(response)
        const code = yield* text(response)
        expect(code, name).not.toContain("sourceMappingURL")
        // Every import is relative, to a module that is served too.
        for (const [, target] of code.matchAll(/^import .* from "([^"]+)"$/gm)) {
          expect(target, `${name} imports ${target}`).toMatch(/^\.\//)
        }
      }
      const marked = yield* text(yield* get(server.url + "/assets/vendor/marked.esm.js"))
      expect(marked).toMatch(/export\s*\{[^}]*\bas marked\b/)
      const purify = yield* text(yield* get(server.url + "/assets/vendor/purify.es.mjs"))
      expect(purify).toContain("export { purify_default as default }")

      const css = yield* get(server.url + "/assets/app.css")
      expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8")
      const icon = yield* get(server.url + "/assets/icon.svg")
      expect(icon.headers.get("content-type")).toBe("image/svg+xml")
    })
  )

  it.scopedLive("answers 304 when the browser's copy is current", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      for (const path of ["/", "/assets/app.js", "/assets/vendor/purify.es.mjs"]) {
        const first = yield* get(server.url + path)
        const etag = first.headers.get("etag")
        expect(etag, path).toMatch(/^"[\w-]+"$/)
        const again = yield* get(server.url + path, { "if-none-match": etag! })
        expect(again.status, path).toBe(304)
        expect(yield* text(again)).toBe("")
        expectSecurityHeaders(again)
        const changed = yield* get(server.url + path, { "if-none-match": '"other"' })
        expect(changed.status, path).toBe(200)
      }
    })
  )

  it.scopedLive("keeps the JSON 404 and 405 for other paths and methods", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      for (const path of ["/assets/missing.js", "/assets/vendor/missing.js", "/index.html", "/assets/a/b/c.js"]) {
        const response = yield* get(server.url + path)
        expect(response.status, path).toBe(404)
        expect(response.headers.get("content-type"), path).toContain("application/json")
        const body = (yield* call(() => response.json())) as any
        expect(body.error.type, path).toBe("not_found")
        expect(body.error.request_id, path).toBe(response.headers.get("x-request-id"))
      }
      const post = yield* call(() => fetch(server.url + "/", { method: "POST" }))
      expect(post.status).toBe(405)
      expect(post.headers.get("allow")).toBe("GET")
      expect(((yield* call(() => post.json())) as any).error.type).toBe("method_not_allowed")
    })
  )

  it.scopedLive("is left out of the OpenAPI document", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const spec = (yield* call(() => fetch(server.url + "/openapi.json").then((response) => response.json()))) as any
      const paths = Object.keys(spec.paths)
      expect(paths).toContain("/v1/chat/stream")
      expect(paths.filter((path) => path === "/" || path.startsWith("/assets"))).toEqual([])
    })
  )
})
