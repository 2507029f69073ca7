"""What the public may see of how the registry is used: the transparency register, a person's "where was my data
used?" letter, and the registry's dataset description for the national Health Data Hub (HealthDCAT-AP).

It reads the catalog (permits, budgets, releases, extract versions, the opt-out register's counts) and never a
patient row, except for one person's letter, which a steward asks for with that person's national ID, and the
dataset description's aggregates of the newest extract (rounded counts, age bands and years that hold enough
people, the common data set's shares), which never show a row.
"""
