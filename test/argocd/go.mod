// Runs the Argo CD health checks of examples/argocd with gopher-lua, the Lua interpreter Argo CD
// embeds, the way Argo CD runs custom health checks from argocd-cm.
module o2c.dev/test/argocd

go 1.24

require github.com/yuin/gopher-lua v1.1.2
