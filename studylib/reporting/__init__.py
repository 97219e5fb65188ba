"""Tables, figures, disagreement maps, cohort QA and the report, read from a results folder."""
