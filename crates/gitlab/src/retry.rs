//! gitlab-runner's retry policy for API requests.
