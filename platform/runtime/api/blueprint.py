from flask import Blueprint

api_blueprint = Blueprint("crmkit_api", __name__, url_prefix="/api/v1")
