"""The HTTP service: aiohttp app, route table, schemas, OpenAPI, middlewares and the request
policies (auth, quotas, rate limits, deadlines).
"""
