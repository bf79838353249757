/**
 * The web chat page (`/`) and its static assets. They are part of the route table (so other paths still get the
 * JSON 404/405) but not of the OpenAPI document: the page is a client of the API, not a part of it.
 */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { NotFound, withErrors } from "../Domain/Errors.js"

const AssetName = Schema.Struct({ name: Schema.String })

export class WebApi extends HttpApiGroup.make("web")
  .add(HttpApiEndpoint.get("page", "/"))
  .add(withErrors(HttpApiEndpoint.get("asset", "/assets/:name").setPath(AssetName), NotFound))
  .add(withErrors(HttpApiEndpoint.get("vendorAsset", "/assets/vendor/:name").setPath(AssetName), NotFound))
  .annotate(OpenApi.Exclude, true) {}
