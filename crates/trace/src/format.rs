//! The trace's look: ANSI colours, runner message lines and collapsible sections, as gitlab-runner writes them.
