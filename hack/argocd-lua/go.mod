// The Argo CD Lua test runner (hack/argocd-lua.sh builds it): runs
// deploy/argocd/resource_customizations/**/health_test.yaml and action_test.yaml on
// gopher-lua, the Lua engine Argo CD embeds, with the libraries Argo CD opens.
module dataforest.dev/hack/argocd-lua

go 1.26

require (
	github.com/yuin/gopher-lua v1.1.2
	layeh.com/gopher-json v0.0.0-20201124131017-552bb3c4c3bf
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
