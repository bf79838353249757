/**
 * The route templates Nexxi serves, derived from the HttpApi definition. The edge uses them to name the route of
 * a request in logs and metrics (a bounded label set) and to tell an unknown path (404) from a known path asked
 * with the wrong method (405, with `Allow`).
 */
import type { HttpApi } from "@effect/platform"

export interface RouteSpec {
  readonly method: string
  readonly path: string
}

export type RouteLookup =
  | { readonly _tag: "Matched"; readonly route: string }
  | { readonly _tag: "MethodNotAllowed"; readonly route: string; readonly allow: ReadonlyArray<string> }
  | { readonly _tag: "NotFound" }

export const routesOf = (api: HttpApi.HttpApi.Any): ReadonlyArray<RouteSpec> =>
  Object.values((api as unknown as HttpApi.HttpApi.AnyWithProps).groups).flatMap((group) =>
    Object.values(group.endpoints).map((endpoint) => ({ method: endpoint.method, path: endpoint.path }))
  )

const segmentsOf = (path: string) => path.split("/").filter((segment) => segment.length > 0)

const matches = (template: ReadonlyArray<string>, path: ReadonlyArray<string>) =>
  template.length === path.length &&
  template.every((segment, index) => segment.startsWith(":") || segment === path[index])

export const makeRouteTable = (routes: ReadonlyArray<RouteSpec>) => {
  const compiled = routes.map((route) => ({ ...route, segments: segmentsOf(route.path) }))
  return (method: string, pathname: string): RouteLookup => {
    const path = segmentsOf(pathname)
    const candidates = compiled.filter((route) => matches(route.segments, path))
    const first = candidates[0]
    if (first === undefined) return { _tag: "NotFound" }
    const exact = candidates.find((route) => route.method === method)
    if (exact !== undefined) return { _tag: "Matched", route: exact.path }
    return { _tag: "MethodNotAllowed", route: first.path, allow: [...new Set(candidates.map((route) => route.method))] }
  }
}
