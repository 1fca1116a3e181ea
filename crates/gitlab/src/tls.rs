//! TLS configuration: trusted roots, client certificates, `tls_server_name`, explained certificate errors.
