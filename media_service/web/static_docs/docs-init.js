// Starts Swagger UI on this service's own description (the page's data-spec-url: /openapi.json).
// Part of the media service (not of swagger-ui-dist). Nothing is loaded from another host:
// validatorUrl null keeps Swagger UI from sending the description to validator.swagger.io.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    defaultModelsExpandDepth: 0,
    persistAuthorization: false
  });
});
