/*
 * Starts Swagger UI at /api/docs on the OpenAPI document the page names. A file rather than
 * inline code, so that the page's Content-Security-Policy allows no inline script.
 */
"use strict";

/*
 * Swagger UI fills each parameter's input with its example (or default) when it opens, and
 * "Try it out" then sends every one of them: all the filters' examples at once, which no job
 * matches. The query's inputs start empty instead (null: not given, which Swagger UI neither
 * validates nor sends), so a request carries what the reader chose; each example and default is
 * still shown beside its parameter. An input emptied again is not given either, as the API
 * counts an empty value.
 */
function QueryInputsStartEmpty() {
  const prefilled = (param, value) =>
    [param.get("example"), param.getIn(["schema", "example"]), param.getIn(["schema", "default"])]
      .some((candidate) => candidate !== undefined && String(candidate) === String(value));
  return {
    statePlugins: {
      spec: {
        wrapActions: {
          changeParamByIdentity: (original, system) => (pathMethod, param, value, isXml) => {
            const held = system.specSelectors.parameterWithMetaByIdentity(pathMethod, param);
            const opening = held === undefined || held.get("value") === undefined;
            const unset = value === "" || (opening && prefilled(param, value));
            const query = param.get("in") === "query";
            return original(pathMethod, param, query && unset ? null : value, isXml);
          },
        },
      },
    },
  };
}

window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.spec,
  dom_id: "#swagger-ui",
  plugins: [QueryInputsStartEmpty],
  // Swagger UI's online validator would send the document elsewhere.
  validatorUrl: null,
});
