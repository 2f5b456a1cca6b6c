// Swagger UI for /api/v1. The CSP allows no inline script, so the page hands over its settings in
// data attributes. "Try it out" rides on the session: calls that change something carry the page's
// CSRF token (the API ignores it for token calls).
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("swagger-ui");
    if (!root || typeof window.SwaggerUIBundle !== "function") {
      return;
    }
    window.ui = window.SwaggerUIBundle({
      url: root.dataset.specUrl,
      domNode: root,
      deepLinking: false,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      requestInterceptor: function (request) {
        request.headers["X-CSRFToken"] = csrfToken();
        return request;
      },
    });
  });
})();
