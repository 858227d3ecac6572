"""`farmctl optimize`: constraints, the candidate plan with every builder, the run, the refinements, the reports and the API."""
