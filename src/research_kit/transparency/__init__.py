"""What the public may see of how the registry is used: the transparency register, a person's "where was my data
used?" letter, and the registry's dataset description for the national Health Data Hub (HealthDCAT-AP).

It reads the catalog (permits, budgets, releases, extract versions, the opt-out register's counts) and never a
patient row, except for one person's letter, which a steward asks for with that person's national ID.
"""
