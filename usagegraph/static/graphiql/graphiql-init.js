// usagegraph's own: starts GraphiQL on the page served at GET /graphql.
// A file rather than an inline <script>, so the page's Content-Security-Policy allows scripts
// from 'self' only. React, ReactDOM and GraphiQL are the vendored globals loaded before it.
(function () {
  "use strict";

  var DEFAULT_QUERY = [
    "# usagegraph GraphiQL",
    "#",
    "# Send credentials in the Headers tab below:",
    '#   {"Authorization": "Bearer <token>"}',
    "# A token: `usagegraph token --user N`.",
    "# An institution's API key works too.",
    "# Without either you are anonymous.",
    "#",
    "# Run: Ctrl-Enter or the play button.",
    "# Complete: Ctrl-Space.",
    "",
    "{",
    "  viewer {",
    "    kind",
    "    userId",
    "  }",
    "}",
    "",
  ].join("\n");

  // The page's own address is the endpoint: it works behind a path prefix too.
  var endpoint = window.location.pathname;

  // The query and variables are kept in the address (`?q=`, `?variables=`, as on
  // Strawberry's page) so a query can be shared by its link. Headers never are: they carry
  // tokens, and addresses end up in logs and browser histories. (`?query=` would not reach
  // this page: the endpoint runs it.)
  var parameters = new URLSearchParams(window.location.search);

  function updateURL(name, value) {
    if (value) {
      parameters.set(name, value);
    } else {
      parameters.delete(name);
    }
    var search = parameters.toString();
    history.replaceState(null, "", search ? "?" + search : window.location.pathname);
  }

  var fetcher = GraphiQL.createFetcher({ url: endpoint });

  function UsagegraphGraphiQL() {
    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      query: parameters.get("q") || undefined,
      variables: parameters.get("variables") || undefined,
      onEditQuery: function (query) {
        updateURL("q", query);
      },
      onEditVariables: function (variables) {
        updateURL("variables", variables);
      },
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: true,
      inputValueDeprecation: true,
    });
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(UsagegraphGraphiQL));
})();
