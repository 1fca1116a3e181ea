//! `SpecError`: why a job's pod cannot be built. Every message says what is wrong, where the value came
//! from and the exact fix; values that could hold a secret are shown with secrets replaced by `[MASKED]`.

/// A job's pod cannot be built from the configuration and payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error(
        "{source_name} = {value:?} is not a Kubernetes quantity: {problem}. Write it like 500m or 2 for \
         CPU and 512Mi or 2Gi for memory and storage"
    )]
    Quantity {
        key: String,
        source_name: String,
        value: String,
        problem: String,
    },

    #[error(
        "the job asks for {variable}={value}, more than the {max} that `{max_key}` in [runners.kubernetes] \
         allows. Lower {variable} in .gitlab-ci.yml, or raise `{max_key}` in config.toml"
    )]
    OverwriteAboveMax {
        variable: String,
        value: String,
        max_key: String,
        max: String,
    },

    #[error(
        "{what} would be requested at {request} but limited to {limit}, which Kubernetes refuses. Make \
         `{request_key}` at most `{limit_key}` in [runners.kubernetes] (or in the job variables that \
         override them)"
    )]
    RequestAboveLimit {
        /// For example "the build container's memory".
        what: String,
        request: String,
        limit: String,
        request_key: String,
        limit_key: String,
    },

    #[error(
        "`{key}` = {pattern:?} in [runners.kubernetes] is not a valid regular expression ({problem}). Fix \
         the pattern; glrunner matches it against the whole value"
    )]
    Regex {
        key: String,
        pattern: String,
        problem: String,
    },

    #[error(
        "the job sets {variable}={value:?}, which `{key}` = {pattern:?} in [runners.kubernetes] does not \
         allow (the pattern must match the whole value). Use an allowed value in .gitlab-ci.yml, or widen \
         `{key}` in config.toml"
    )]
    OverwriteNotAllowed {
        variable: String,
        value: String,
        key: String,
        pattern: String,
    },

    #[error(
        "the job variable {variable}={value:?} is not of the form {expected}. Write it as {expected} in .gitlab-ci.yml"
    )]
    OverwriteFormat {
        variable: String,
        value: String,
        expected: String,
    },

    #[error(
        "{source_name} sets the label {key:?}={value:?}, which Kubernetes refuses: {problem}. Fix it in {source_name}"
    )]
    Label {
        source_name: String,
        key: String,
        value: String,
        problem: String,
    },

    #[error(
        "{source_name} sets {what} {key:?}, but keys under runner.gitlab.com/ and glrunner/ are glrunner's \
         own (it finds and cleans up job objects by them). Use another key in {source_name}"
    )]
    ProtectedKey {
        source_name: String,
        what: String,
        key: String,
    },

    #[error(
        "{source_name} names the pull policy {value:?}, which is not one of always, if-not-present or never. Fix it in {source_name}"
    )]
    UnknownPullPolicy { source_name: String, value: String },

    #[error(
        "the job asks for pull policy {requested} but [runners.kubernetes] allows only {allowed}. Use one \
         of those in the job's `image:pull_policy`, or add it to `allowed_pull_policies` in config.toml"
    )]
    PullPolicyNotAllowed { requested: String, allowed: String },

    #[error(
        "the job's {what} {image:?} is not allowed: it matches none of `{key}` = {patterns:?} in \
         [runners.kubernetes]. Use an allowed image in .gitlab-ci.yml, or add a pattern for it to `{key}`"
    )]
    ImageNotAllowed {
        what: String,
        image: String,
        key: String,
        patterns: String,
    },

    #[error(
        "`{key}` pattern {pattern:?} in [runners.kubernetes] is not a valid glob ({problem}). Fix the pattern, for example \"docker.io/library/*\""
    )]
    Glob {
        key: String,
        pattern: String,
        problem: String,
    },

    #[error(
        "the job has no image and [runners.kubernetes] sets none. Set `image = \"alpine:3\"` (or another \
         default) in [runners.kubernetes], or `image:` in .gitlab-ci.yml"
    )]
    NoImage,

    #[error(
        "volume {name:?} in [[runners.kubernetes.volumes.{kind}]]: {problem}. Fix that entry in config.toml"
    )]
    Volume {
        kind: String,
        name: String,
        problem: String,
    },

    #[error(
        "node toleration {key:?} = {effect:?}: {problem}. Write tolerations as \"key=value\" = \"NoSchedule\" \
         (or PreferNoSchedule, NoExecute, or \"\" for every effect); a key without `=` matches any value"
    )]
    Toleration {
        key: String,
        effect: String,
        problem: String,
    },

    #[error(
        "{what} {value:?} from {source_name} is not a valid Kubernetes name: {problem}. Fix it in {source_name}"
    )]
    Name {
        what: String,
        value: String,
        source_name: String,
        problem: String,
    },

    #[error(
        "host alias {value:?} in [[runners.kubernetes.host_aliases]]: {problem}. Fix that entry in config.toml"
    )]
    HostAlias { value: String, problem: String },

    #[error(
        "`dns_policy = \"none\"` needs at least one name server. Add `nameservers = [\"10.0.0.10\"]` under \
         [runners.kubernetes.dns_config], or choose another dns_policy"
    )]
    DnsNoneWithoutNameservers,

    #[error("the job's image asks to run as user {value:?}: {problem}")]
    JobUser { value: String, problem: String },

    #[error(
        "{what} would appear in the pod spec at `{path}`, where anyone who can read pods sees it. \
         Remove the reference to it from {hint}; masked and file variables reach job containers only \
         through the job's Secret"
    )]
    SecretInPodSpec {
        what: String,
        path: String,
        hint: String,
    },

    #[error(
        "the job's secret variables take {size} bytes, more than the {max} bytes a Kubernetes Secret can \
         hold. Move large values (certificates, key files) into a [[runners.kubernetes.volumes.secret]] \
         mount instead of CI/CD variables"
    )]
    SecretTooLarge { size: usize, max: usize },

    #[error("`{key}` = {value} in [runners.kubernetes] must not be negative. Set it to 0 or more")]
    Negative { key: String, value: i64 },
}

impl SpecError {
    /// The same error with `f` applied to every text it shows (to replace secrets by `[MASKED]`).
    pub fn map_text(self, f: impl Fn(&str) -> String) -> Self {
        let f = |s: String| f(&s);
        use SpecError::*;
        match self {
            Quantity {
                key,
                source_name,
                value,
                problem,
            } => Quantity {
                key: f(key),
                source_name: f(source_name),
                value: f(value),
                problem: f(problem),
            },
            OverwriteAboveMax {
                variable,
                value,
                max_key,
                max,
            } => OverwriteAboveMax {
                variable: f(variable),
                value: f(value),
                max_key: f(max_key),
                max: f(max),
            },
            RequestAboveLimit {
                what,
                request,
                limit,
                request_key,
                limit_key,
            } => RequestAboveLimit {
                what: f(what),
                request: f(request),
                limit: f(limit),
                request_key: f(request_key),
                limit_key: f(limit_key),
            },
            Regex {
                key,
                pattern,
                problem,
            } => Regex {
                key: f(key),
                pattern: f(pattern),
                problem: f(problem),
            },
            OverwriteNotAllowed {
                variable,
                value,
                key,
                pattern,
            } => OverwriteNotAllowed {
                variable: f(variable),
                value: f(value),
                key: f(key),
                pattern: f(pattern),
            },
            OverwriteFormat {
                variable,
                value,
                expected,
            } => OverwriteFormat {
                variable: f(variable),
                value: f(value),
                expected: f(expected),
            },
            Label {
                source_name,
                key,
                value,
                problem,
            } => Label {
                source_name: f(source_name),
                key: f(key),
                value: f(value),
                problem: f(problem),
            },
            ProtectedKey {
                source_name,
                what,
                key,
            } => ProtectedKey {
                source_name: f(source_name),
                what: f(what),
                key: f(key),
            },
            UnknownPullPolicy { source_name, value } => UnknownPullPolicy {
                source_name: f(source_name),
                value: f(value),
            },
            PullPolicyNotAllowed { requested, allowed } => PullPolicyNotAllowed {
                requested: f(requested),
                allowed: f(allowed),
            },
            ImageNotAllowed {
                what,
                image,
                key,
                patterns,
            } => ImageNotAllowed {
                what: f(what),
                image: f(image),
                key: f(key),
                patterns: f(patterns),
            },
            Glob {
                key,
                pattern,
                problem,
            } => Glob {
                key: f(key),
                pattern: f(pattern),
                problem: f(problem),
            },
            Volume {
                kind,
                name,
                problem,
            } => Volume {
                kind: f(kind),
                name: f(name),
                problem: f(problem),
            },
            Toleration {
                key,
                effect,
                problem,
            } => Toleration {
                key: f(key),
                effect: f(effect),
                problem: f(problem),
            },
            Name {
                what,
                value,
                source_name,
                problem,
            } => Name {
                what: f(what),
                value: f(value),
                source_name: f(source_name),
                problem: f(problem),
            },
            HostAlias { value, problem } => HostAlias {
                value: f(value),
                problem: f(problem),
            },
            JobUser { value, problem } => JobUser {
                value: f(value),
                problem: f(problem),
            },
            SecretInPodSpec { what, path, hint } => SecretInPodSpec {
                what: f(what),
                path: f(path),
                hint: f(hint),
            },
            Negative { key, value } => Negative { key: f(key), value },
            e @ (NoImage | DnsNoneWithoutNameservers | SecretTooLarge { .. }) => e,
        }
    }
}
