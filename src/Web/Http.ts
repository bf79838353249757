/**
 * Serves the web chat page: its HTML, CSS and browser modules (`Web/static/`) and the browser builds of marked and
 * DOMPurify from node_modules, all read once at start-up. Nothing is fetched from anywhere else at run time, and
 * every response carries a content security policy that allows only this origin's scripts, styles and API.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { readdir, readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { dirname, extname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Api } from "../Api.js"
import { NotFound } from "../Domain/Errors.js"

/** No inline script or style anywhere in the page, so the policy can stay this strict. */
export const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

const securityHeaders = {
  "content-security-policy": contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin"
}

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml"
}

interface Asset {
  readonly body: string
  readonly contentType: string
  readonly etag: string
}

const asset = (fileName: string, body: string): Asset => ({
  body,
  contentType: contentTypes[extname(fileName)] ?? "application/octet-stream",
  etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`
})

/** Source maps are not served: the reference would only make a browser's developer tools ask for a 404. */
const withoutSourceMap = (code: string) => code.replace(/^\/\/# sourceMappingURL=.*$/m, "")

const STATIC_DIR = fileURLToPath(new URL("./static/", import.meta.url))

const require = createRequire(import.meta.url)
/** The ES module builds, next to the entry points `require` resolves (their export maps hide package.json). */
const vendorFiles = {
  "marked.esm.js": join(dirname(require.resolve("marked")), "marked.esm.js"),
  "purify.es.mjs": join(dirname(require.resolve("dompurify")), "purify.es.mjs")
}

/** Every file of the page, read once; a missing one is a broken installation, so start-up fails. */
const loadAssets = Effect.promise(async () => {
  const own = new Map<string, Asset>()
  for (const fileName of await readdir(STATIC_DIR)) {
    own.set(fileName, asset(fileName, await readFile(join(STATIC_DIR, fileName), "utf8")))
  }
  const vendor = new Map<string, Asset>()
  for (const [fileName, path] of Object.entries(vendorFiles)) {
    vendor.set(fileName, asset(fileName, withoutSourceMap(await readFile(path, "utf8"))))
  }
  const page = own.get("index.html")
  if (page === undefined) throw new Error(`The web page is missing: no index.html in ${STATIC_DIR}`)
  own.delete("index.html")
  return { page, own, vendor }
})

/** Small files, revalidated on every use (ETag), so that a new version of Nexxi is picked up at once. */
const respond = (asset: Asset, ifNoneMatch: string | undefined) => {
  const headers = { ...securityHeaders, "cache-control": "no-cache", etag: asset.etag }
  return ifNoneMatch === asset.etag
    ? HttpServerResponse.empty({ status: 304, headers })
    : HttpServerResponse.text(asset.body, { contentType: asset.contentType, headers })
}

const lookup = (assets: ReadonlyMap<string, Asset>, name: string, ifNoneMatch: string | undefined) => {
  const found = assets.get(name)
  return found === undefined
    ? Effect.fail(new NotFound({ message: `No asset ${name}` }))
    : Effect.succeed(respond(found, ifNoneMatch))
}

export const WebHttpLive = HttpApiBuilder.group(Api, "web", (handlers) =>
  Effect.gen(function* () {
    const { page, own, vendor } = yield* loadAssets
    return handlers
      .handle("page", ({ request }) => Effect.succeed(respond(page, request.headers["if-none-match"])))
      .handle("asset", ({ path, request }) => lookup(own, path.name, request.headers["if-none-match"]))
      .handle("vendorAsset", ({ path, request }) => lookup(vendor, path.name, request.headers["if-none-match"]))
  })
)
