"""Demo data: a seeded, realistic data set (customers, orders, events, the "club" loyalty program) loaded fast.

Entry point: :func:`cohorta.demo.generator.load_demo`. Reference tables (countries, names, products, event kinds)
live in :mod:`cohorta.demo.reference`.
"""
