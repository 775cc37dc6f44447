"""What the test tiers and the benchmarks share: builders of objects and AdmissionReviews, the
real kube-apiserver and etcd, the webhook as a process, kubectl, and the upstream CRDs.

Neither ``tests`` nor ``bench`` imports the other; both import this."""
