/*
 * Starts Swagger UI at /api/docs on the OpenAPI document the page names. A file rather than
 * inline code, so that the page's Content-Security-Policy allows no inline script.
 */
"use strict";

window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.spec,
  dom_id: "#swagger-ui",
  // Swagger UI's online validator would send the document elsewhere.
  validatorUrl: null,
});
