// Package deploy holds lakesink's deployment files and the tests that check them: the
// container image (Dockerfile), the compose stack, the Kubernetes manifests (kustomize),
// the Terraform module, the Grafana dashboard, the alert rules and the CI workflow.
//
// It is a separate Go module so the test-only dependencies (Kubernetes API types,
// kustomize, the PromQL parser, compose-go, HCL) stay out of the lakesink binary's module.
// Run the tests with `make test-deploy` (or `cd deploy && go test ./...`).
package deploy
