"""A trained model over a cached patient, as probability volumes and masks on the CT grid."""
