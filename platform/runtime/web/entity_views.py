"""Entity pages: list, detail, create/edit form, delete, recycle bin (placeholder until written)."""


def register_entity_routes(bp):
    @bp.route("/e/<entity_key>/")
    def entity_list(entity_key):
        return "todo"
