# Puts the CJ batch-health route ($route[0], grafana/routing/cj_health_route.json) first among
# the top-level routes of an exported notification policy tree, replacing an earlier copy of
# it (the route whose matchers are exactly team=cj-assessment), and keeps every other route
# and the tree's own receiver and grouping. Running it twice gives the same tree.
# docs/runbook.md, "Notification routing", shows the export, this merge and the upload.
.routes = [$route[0]] + [
  (.routes // [])[]
  | select((.object_matchers // []) != [["team", "=", "cj-assessment"]])
]
